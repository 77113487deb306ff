//! The page's callbacks and the events queued for them.
//!
//! Yrs runs observers while the document is still locked for the transaction, and a callback
//! that read the document there would panic. So what happens is only queued here; the engine
//! delivers the queue once the transaction is over (at the end of each exported call, after
//! each frame from the relay, and in a microtask for anything else).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use inloop_doc::ChangeBatch;
use js_sys::Function;
use serde::Serialize;
use wasm_bindgen::JsValue;

use crate::sync::StatusReport;

/// Something for the page.
#[derive(Debug)]
pub(crate) enum Event {
    Change(ChangeBatch),
    Status(StatusReport),
    /// Someone's presence changed (its value is read when delivered).
    Presence,
}

impl Event {
    fn topic(&self) -> Topic {
        match self {
            Event::Change(_) => Topic::Change,
            Event::Status(_) => Topic::Status,
            Event::Presence => Topic::Presence,
        }
    }
}

/// Which callback list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Topic {
    Change,
    Status,
    Presence,
}

/// The queue of events and the callbacks they go to.
#[derive(Debug, Default)]
pub(crate) struct Events {
    queue: RefCell<VecDeque<Event>>,
    delivering: Cell<bool>,
    /// A delivery in a microtask is scheduled.
    microtask: Cell<bool>,
    callbacks: RefCell<Vec<(u32, Topic, Function)>>,
    next_callback: Cell<u32>,
}

impl Events {
    pub(crate) fn push(&self, event: Event) {
        self.queue.borrow_mut().push_back(event);
    }

    /// Delivers what is queued now, each event as `value` makes it, unless a delivery is under
    /// way (a callback that called into the engine): that one picks the new events up.
    pub(crate) fn deliver(&self, value: impl Fn(&Event) -> JsValue) {
        if self.delivering.replace(true) {
            return;
        }
        loop {
            let Some(event) = self.queue.borrow_mut().pop_front() else {
                break;
            };
            let topic = event.topic();
            let value = value(&event);
            let callbacks: Vec<Function> = self
                .callbacks
                .borrow()
                .iter()
                .filter(|(_, t, _)| *t == topic)
                .map(|(_, _, f)| f.clone())
                .collect();
            for callback in callbacks {
                if let Err(error) = callback.call1(&JsValue::NULL, &value) {
                    web_sys::console::error_2(&"inloop: a callback threw".into(), &error);
                }
            }
        }
        self.delivering.set(false);
    }

    /// Whether the caller should schedule a delivery in a microtask: `false` when one is
    /// scheduled already. The microtask calls [`Events::microtask_ran`] before delivering.
    pub(crate) fn schedule_microtask(&self) -> bool {
        !self.microtask.replace(true)
    }

    pub(crate) fn microtask_ran(&self) {
        self.microtask.set(false);
    }

    /// Adds a callback; returns its id for [`Events::unsubscribe`].
    pub(crate) fn subscribe(&self, topic: Topic, callback: Function) -> u32 {
        let id = self.next_callback.get() + 1;
        self.next_callback.set(id);
        self.callbacks.borrow_mut().push((id, topic, callback));
        id
    }

    pub(crate) fn unsubscribe(&self, id: u32) -> bool {
        let mut callbacks = self.callbacks.borrow_mut();
        let before = callbacks.len();
        callbacks.retain(|(i, _, _)| *i != id);
        callbacks.len() != before
    }
}

/// A Rust value as a plain JavaScript value (objects, not `Map`s).
pub(crate) fn to_js<T: Serialize + ?Sized>(value: &T) -> JsValue {
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    value.serialize(&serializer).unwrap_or(JsValue::NULL)
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use std::rc::Rc;

    use inloop_sync::Status;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen_test::wasm_bindgen_test;

    use super::*;

    fn status(unacknowledged: u64) -> Event {
        Event::Status(StatusReport {
            status: Status::Synced,
            unacknowledged,
        })
    }

    fn value(event: &Event) -> JsValue {
        match event {
            Event::Status(report) => JsValue::from_f64(report.unacknowledged as f64),
            Event::Presence => "presence".into(),
            Event::Change(_) => "change".into(),
        }
    }

    /// A callback keeping what it receives, as text.
    fn recorder(seen: &Rc<RefCell<Vec<String>>>, tag: &'static str) -> Closure<dyn FnMut(JsValue)> {
        let seen = seen.clone();
        Closure::new(move |v: JsValue| {
            let text = v
                .as_f64()
                .map_or_else(|| v.as_string().unwrap(), |n| n.to_string());
            seen.borrow_mut().push(format!("{tag}:{text}"));
        })
    }

    #[wasm_bindgen_test]
    fn events_go_in_order_to_the_callbacks_of_their_topic_once_delivered() {
        let events = Events::default();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let a = recorder(&seen, "a");
        let b = recorder(&seen, "b");
        let p = recorder(&seen, "p");
        let id_a = events.subscribe(
            Topic::Status,
            a.as_ref().unchecked_ref::<Function>().clone(),
        );
        let id_b = events.subscribe(
            Topic::Status,
            b.as_ref().unchecked_ref::<Function>().clone(),
        );
        events.subscribe(
            Topic::Presence,
            p.as_ref().unchecked_ref::<Function>().clone(),
        );
        assert_ne!(id_a, id_b);

        events.push(status(1));
        events.push(Event::Presence);
        events.push(status(2));
        assert!(seen.borrow().is_empty(), "queued, not delivered");
        events.deliver(value);
        assert_eq!(*seen.borrow(), ["a:1", "b:1", "p:presence", "a:2", "b:2"]);

        assert!(events.unsubscribe(id_a));
        assert!(!events.unsubscribe(id_a), "already gone");
        seen.borrow_mut().clear();
        events.push(status(3));
        events.deliver(value);
        assert_eq!(*seen.borrow(), ["b:3"]);
    }

    #[wasm_bindgen_test]
    fn a_callback_that_queues_more_gets_them_from_the_same_delivery() {
        let events = Rc::new(Events::default());
        let seen = Rc::new(RefCell::new(Vec::new()));
        let inner = Rc::downgrade(&events);
        let log = seen.clone();
        let callback = Closure::<dyn FnMut(JsValue)>::new(move |v: JsValue| {
            let n = v.as_f64().unwrap() as u64;
            log.borrow_mut().push(n);
            if n < 3 {
                let events = inner.upgrade().unwrap();
                events.push(status(n + 1));
                // A nested delivery (the page calling into the engine) leaves it to the outer one.
                events.deliver(value);
                assert_eq!(log.borrow().last(), Some(&n));
            }
        });
        events.subscribe(
            Topic::Status,
            callback.as_ref().unchecked_ref::<Function>().clone(),
        );
        events.push(status(1));
        events.deliver(value);
        assert_eq!(*seen.borrow(), [1, 2, 3]);
    }

    #[wasm_bindgen_test]
    fn a_throwing_callback_does_not_stop_the_others() {
        let events = Events::default();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let throws = Function::new_no_args("throw new Error('boom')");
        events.subscribe(Topic::Presence, throws);
        let after = recorder(&seen, "after");
        events.subscribe(
            Topic::Presence,
            after.as_ref().unchecked_ref::<Function>().clone(),
        );
        events.push(Event::Presence);
        events.deliver(value);
        assert_eq!(*seen.borrow(), ["after:presence"]);
    }

    #[wasm_bindgen_test]
    fn one_microtask_at_a_time() {
        let events = Events::default();
        assert!(events.schedule_microtask());
        assert!(!events.schedule_microtask(), "one is scheduled");
        events.microtask_ran();
        assert!(events.schedule_microtask());
    }
}
