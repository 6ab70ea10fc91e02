//! The only module that knows AMQP (lapin): connect, consume, publish with confirms, delay queues.
