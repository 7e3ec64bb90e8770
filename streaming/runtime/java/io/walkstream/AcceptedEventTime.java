package io.walkstream;

import java.io.Serializable;

import org.apache.flink.types.Row;

/**
 * The event time (seconds) of a ratings record the job accepts, or NULL: the only time the
 * ratings source's watermark follows ({@link RatingWatermarks}).
 *
 * <p>A record is read in the producer's compact form ({@link CompactEvent}) or else by the
 * strict {@link JsonEvent} reader, and checked against the {@link EventRules}. Either reader
 * accepts only records the Python validator accepts, with the same event time, so a record
 * sent to the dead-letter topic never moves event time; a valid record neither reads (a rare
 * JSON form) leaves the watermark to the others.
 */
public final class AcceptedEventTime implements Serializable {
    private static final long serialVersionUID = 1L;

    private final EventRules rules;

    public AcceptedEventTime(EventRules rules) {
        this.rules = rules;
    }

    /** The event time of {@code record}, with Kafka key {@code key}, received at {@code
     * receivedS}, if the job accepts it; else null. */
    public Long read(String key, byte[] record, Long receivedS) {
        if (record == null || receivedS == null || record.length > rules.maxRecordBytes()) {
            return null;
        }
        Row compact = CompactEvent.read(record, rules.maxRecordBytes());
        if (compact != null) {
            long time = compact.<Long>getFieldAs(3);
            boolean valid = rules.accepts(
                    key, compact.<Long>getFieldAs(0), compact.<Double>getFieldAs(2), time,
                    receivedS);
            return valid ? time : null;
        }
        JsonEvent event = JsonEvent.read(record);
        if (event == null
                || !rules.accepts(key, event.userId, event.rating, event.eventTime, receivedS)) {
            return null;
        }
        return event.eventTime;
    }
}
