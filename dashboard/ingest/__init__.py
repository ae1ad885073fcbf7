"""From the event stream to rows: decode, merge, write.

The monitor is the only writer of task rows.
"""
