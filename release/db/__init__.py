"""The read-only PostgreSQL dry run (G6): the SQL guard, the check itself, the route
through the target, and the throwaway demo server."""
