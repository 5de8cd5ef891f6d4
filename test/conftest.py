"""Shared test set-up: ROS 2 traffic stays on this machine and in a domain of its own."""
import os
import random

# A random domain per test session keeps parallel runs (and other ROS users) apart; discovery
# stays on localhost so tests never reach the network.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
