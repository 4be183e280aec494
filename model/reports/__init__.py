"""What results become: the result record, the reproducibility stamp, PDF/HTML reports and the model card."""
