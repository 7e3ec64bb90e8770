package io.walkstream;

import java.time.Instant;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * The whole seconds of a Kafka record's timestamp, as {@link EventRules} reads it, for the
 * Python validator to judge an event's time against the same clock (SQL has no cast from
 * TIMESTAMP_LTZ to a number).
 */
public final class ReceivedSeconds extends ScalarFunction {
    private static final long serialVersionUID = 1L;

    public long eval(@DataTypeHint("TIMESTAMP_LTZ(3)") Instant received) {
        return EventRules.receivedSeconds(received);
    }
}
