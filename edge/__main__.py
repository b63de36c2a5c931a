"""`python -m edge`: the same CLI as the `edge` console script."""

from edge.cli.main import main

if __name__ == "__main__":
    main()
