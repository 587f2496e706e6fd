"""From a .tflite to a built ELF: projects, the native and TFLM runtimes, compiling."""
