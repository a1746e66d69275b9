"""Interception points in the traffic path: SMPP firewall proxy, SIP call-screening proxy."""
