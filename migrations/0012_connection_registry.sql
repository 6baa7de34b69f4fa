-- the connection registry (filled in by its change)
SELECT 1;
