"""The `run` mode: labelled data -> training -> the gate -> publishing, with the drift report."""
