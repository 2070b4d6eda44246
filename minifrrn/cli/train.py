"""`minifrrn train`: not implemented yet."""
from . import NotImplementedCommand


def add_arguments(parser):
    pass


def run(args):
    raise NotImplementedCommand("'minifrrn train' is not implemented yet")
