"""``python -m evaluation``: metrics of generated images, or ``assets`` to prepare the weights."""

import sys

from evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
