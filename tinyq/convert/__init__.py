"""Keras/TensorFlow -> .tflite (PTQ, QAT) and measuring a .tflite on the host."""
