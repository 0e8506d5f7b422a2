"""Threat models, attacks, defenses, certification and attacked evaluation of rllab agents."""
