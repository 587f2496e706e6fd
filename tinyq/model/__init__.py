"""The model as tinyq sees it: IR, .tflite reader/writer, host interpreters, checks."""
