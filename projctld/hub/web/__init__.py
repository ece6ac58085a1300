"""The hub's team pages: server-rendered HTML of what is deployed where, the timeline and the
delivery metrics, for people with a hub token (signed in once) or a share link."""
