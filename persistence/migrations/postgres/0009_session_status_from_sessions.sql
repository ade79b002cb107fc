-- Settling a session writes its `sessions` row only. The consultation's session status is
-- read as COALESCE(sessions.status, consultations.session_status): the column keeps the
-- status the booking was made with (`pending` for an in-app consultation, `not_required`
-- otherwise). Updating the consultation as well cost a new row version and an entry in each
-- of its indexes per session.
COMMENT ON COLUMN consultations.session_status IS
    'status at booking; the current status of an in-app consultation''s session is sessions.status';
