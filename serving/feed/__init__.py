"""The security event feed for the defence centre.

- :mod:`~serving.feed.ocsf`: OCSF 1.1-style records of each event (pure);
- :mod:`~serving.feed.sinks`: the JSON-lines file and the optional syslog sink;
- :mod:`~serving.feed.follower`: the ledger follower that turns security,
  violation and crisis entries into records, and the feed of an installation.
"""

from serving.feed.follower import LedgerFollower, open_feed, report_tamper
from serving.feed.ocsf import policy_refusal_record, rate_limited_record, record_for_entry, tamper_record
from serving.feed.sinks import FileSink, SecurityFeed, SyslogSink, rfc5424

__all__ = ["FileSink", "LedgerFollower", "SecurityFeed", "SyslogSink", "open_feed",
           "policy_refusal_record", "rate_limited_record", "record_for_entry", "report_tamper",
           "rfc5424", "tamper_record"]
