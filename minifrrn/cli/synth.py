"""`minifrrn synth`: not implemented yet."""
from . import NotImplementedCommand


def add_arguments(parser):
    pass


def run(args):
    raise NotImplementedCommand("'minifrrn synth' is not implemented yet")
