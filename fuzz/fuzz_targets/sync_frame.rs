//! `inloop_sync::wire::decode` on arbitrary bytes: an error or a message, never a panic. A frame
//! that decodes is encoded again, and that frame decodes to the same message and encodes to the
//! same bytes (the round trip agrees). The update a sync message carries goes through yrs's
//! update decoder too, as the relay's room does with every update it gets.
#![no_main]

use inloop_sync::wire::{self, Message};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: inloop_fuzz::FuzzAlloc = inloop_fuzz::FuzzAlloc;
use yrs::updates::decoder::Decode;

fuzz_target!(|frame: &[u8]| {
    inloop_fuzz::init();
    let Ok(message) = wire::decode(frame) else {
        return;
    };
    if let Message::SyncStep2(update) | Message::Update(update) = &message {
        // As the relay does: yrs decodes a peer's update only once inloop-doc's reader (which
        // reserves nothing on the update's word) has read it whole.
        if let Ok(structs) = inloop_doc::structs::UpdateStructs::decode_v1(update) {
            let _ = yrs::Update::decode_v1(update);
            let _ = structs.clients().count();
        }
        assert_eq!(
            wire::encode_update(update),
            Message::Update(update.clone()).encode(),
            "encode_update and Message::Update disagree"
        );
    }
    let encoded = message.clone().encode();
    let again = match wire::decode(&encoded) {
        Ok(again) => again,
        Err(error) => panic!("{message:?} encodes to {encoded:?}, which does not decode: {error}"),
    };
    assert_eq!(again, message, "the round trip changed the message");
    // State vectors and awareness updates are hash maps, written in their iteration order.
    if !matches!(again, Message::SyncStep1(_) | Message::Awareness(_)) {
        assert_eq!(again.encode(), encoded, "the encoding is not stable");
    }
});
