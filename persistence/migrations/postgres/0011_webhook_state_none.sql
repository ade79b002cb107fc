-- Notifications written while no webhook receiver is configured get webhook_state 'none':
-- they are for the inbox only, so no poll reads them and notifications_webhooks_due (WHERE
-- webhook_state = 'pending') does not index them.
COMMENT ON COLUMN notifications.webhook_state IS
    'pending | delivered | failed, or none: written while no webhook receiver was configured';
