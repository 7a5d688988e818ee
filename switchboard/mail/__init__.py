"""Email: the messages Switchboard sends, sealed into a job, delivered over SMTP by a worker."""
