"""The engine: admission, the generate and filter workers, record building, and the wiring between them."""
