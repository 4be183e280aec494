"""How far to trust an answer and the model: the out-of-distribution guard and uncertainty, explanations and
their faithfulness, nearest training slices, and the evaluation metrics."""
