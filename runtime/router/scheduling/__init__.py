"""Scheduling: filters narrow the engines, weighted scorers rank them, a picker takes one, a decider says P/D or not."""
