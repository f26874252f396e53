"""`make bench`: performance figures measured as ratios against a baseline, in one run."""
