"""Studies: ``rllab lab [STUDY.yml]`` trains, defends, compresses, adapts, evaluates, attacks and explains
agents as one cached, resumable job and writes one offline page. It composes rllab, robustness and explain,
so it sits above all three (L5, beside the command modules) and nothing imports it."""
