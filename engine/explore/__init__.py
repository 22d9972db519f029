"""What the exploring views compute, without Qt: one module per view (map, words,
search, reconstructions, the Train view's collapse policy). Each returns frozen
dataclasses; the views in ``gui/views`` only draw them."""
