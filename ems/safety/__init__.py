"""The safety layer: pure rules (`rules.decide`) and the loop that alone writes setpoints (`loop`)."""
