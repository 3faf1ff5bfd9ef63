"""The notifier: matches events from the event stream to subscriptions and delivers email and webhooks."""
