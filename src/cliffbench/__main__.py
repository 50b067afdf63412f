"""`python -m cliffbench ...`: the `cliffbench` command."""

from cliffbench.cli import main

if __name__ == "__main__":
    main()
