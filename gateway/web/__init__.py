"""The review page: server-rendered HTML on the review service (issue 11)."""
