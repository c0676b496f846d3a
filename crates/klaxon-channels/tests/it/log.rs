//! The development log channel.

use klaxon_channels::{ChannelKind, Channels, Config, Delivery};

use crate::webhook::notification;

#[tokio::test]
async fn log_channel_always_succeeds_without_network() {
    let config: Config = toml::from_str("[[channels]]\nname = \"dev-log\"\nkind = \"log\"\n").unwrap();
    let channels = Channels::new(&config.channels, |_| None).unwrap();
    let channel = channels.get("dev-log").unwrap();
    assert_eq!(channel.kind(), ChannelKind::Log);

    for _ in 0..3 {
        let delivery = channel.deliver(&notification()).await.unwrap();
        assert_eq!(delivery, Delivery { attempts: 1, status: 0, thread: None });
    }
}
