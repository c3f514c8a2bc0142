"""``python -m mdg.data.synthetic``: see :mod:`mdg.data.synthetic.cli`."""

import sys

from mdg.data.synthetic.cli import main

main(sys.argv[1:])
