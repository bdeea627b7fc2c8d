"""``python -m dicompack.cli``."""
from dicompack.cli import main

main()
