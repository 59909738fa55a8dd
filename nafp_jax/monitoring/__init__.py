"""Broadcast monitoring: which catalogue tracks play in a long recording or a live
stream, from when to when (`nafp monitor`, `monitor.monitor_stream`)."""
