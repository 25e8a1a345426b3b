"""Point-in-time account features, labels and training sets, computed in the database."""
