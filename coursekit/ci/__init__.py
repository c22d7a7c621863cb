"""What the GitHub workflows (.github/workflows/) run: their logic lives here, where tests run it too."""
