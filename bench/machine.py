"""What the benchmark scripts say about the machine a figure was measured on."""


def cpu_name():
    """The CPU's model name from /proc/cpuinfo."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"
