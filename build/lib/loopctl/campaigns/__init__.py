"""The example campaigns, shipped in the wheel as ``loopctl.campaigns`` (see loopctl.examples)."""
