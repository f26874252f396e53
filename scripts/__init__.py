"""Scripts the Makefile and the workflows run."""
