"""One click command per module. Modules import only click and light kerascnn modules at the
top; TensorFlow/Keras are imported inside the command functions."""
