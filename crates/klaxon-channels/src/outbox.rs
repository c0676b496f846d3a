//! The channels as the domain's [`Outbox`]: what the service kit delivers
//! paging's and the notifier's messages through.

use std::future::Future;
use std::pin::Pin;

use klaxon_domain::outbox::{Message, Outbox, Outcome};

use crate::{Channels, Error, Notification};

impl Outbox for Channels {
    fn deliver<'a>(
        &'a self,
        channel: &'a str,
        message: &'a Message,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>> {
        Box::pin(async move {
            let notification = Notification {
                idempotency_key: message.idempotency_key.clone(),
                kind: message.kind.clone(),
                title: message.title.clone(),
                text: message.text.clone(),
                fields: message.fields.clone(),
                recipient: message.recipient.clone(),
                // Threading follow-ups (issue 15, second part) comes with
                // the notifier recording each channel's thread reference.
                thread: None,
            };
            match Channels::deliver(self, channel, &notification).await {
                Ok(delivery) => Outcome::Delivered { attempts: delivery.attempts },
                Err(e) => {
                    let attempts = match &e {
                        Error::Exhausted { attempts, .. } => *attempts,
                        _ => 1,
                    };
                    Outcome::Failed { attempts, error: e.to_string() }
                }
            }
        })
    }
}
