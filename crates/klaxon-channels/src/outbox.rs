//! The channels as the domain's [`Outbox`]: what the service kit delivers
//! paging's and the notifier's messages through. A message's thread goes
//! to the channel as [`Notification::thread`], and the thread the channel
//! answers with (a first Slack `ts`, a first e-mail's `Message-ID`) comes
//! back in [`Outcome::Delivered`], for the caller to record.

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
                thread: message.thread.clone(),
            };
            match Channels::deliver(self, channel, &notification).await {
                Ok(delivery) => Outcome::Delivered { attempts: delivery.attempts, thread: delivery.thread },
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
