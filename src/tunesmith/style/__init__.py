"""The style classifier: which dance rhythm a recording is, its training and evaluation."""
