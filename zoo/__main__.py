"""`python -m zoo fit|validate|test|predict --config X.yaml`."""
from zoo.cli import main

if __name__ == "__main__":
    main()
