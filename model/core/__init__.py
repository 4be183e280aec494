"""What every other part stands on: constants, the network, preprocessing, weights, calibration, engines,
inference, the dataset reader and the facts about training recipes that runtime needs. Needs torch."""
