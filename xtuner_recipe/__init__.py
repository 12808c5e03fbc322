"""Python that the recipe's Snakemake rules call: one module per stage, each unit-tested."""
