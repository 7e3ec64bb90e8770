package io.walkstream;

import java.io.Serializable;
import java.time.Instant;

/**
 * What a valid rating event is: the Python validator's rules ({@code streaming.core.events}),
 * for the job's Java functions, which accept a record only where that validator would.
 */
public final class EventRules implements Serializable {
    private static final long serialVersionUID = 1L;
    private static final long MS = 1000L;

    private final double minRating;
    private final double maxRating;
    private final long maxEventTime;
    private final int maxRecordBytes;
    private final long maxAheadS;

    public EventRules(
            double minRating, double maxRating, long maxEventTime, int maxRecordBytes,
            long maxAheadS) {
        this.minRating = minRating;
        this.maxRating = maxRating;
        this.maxEventTime = maxEventTime;
        this.maxRecordBytes = maxRecordBytes;
        this.maxAheadS = maxAheadS;
    }

    public int maxRecordBytes() {
        return maxRecordBytes;
    }

    /**
     * Whether an event with these fields, read from a record with this Kafka key and received
     * by the broker at {@code received}, is valid. Ids are known to be in 0..2^63-1.
     */
    public boolean accepts(
            String key, long user, double rating, long eventTime, Instant received) {
        return key != null
                && key.equals(Long.toString(user))
                && Double.isFinite(rating)
                && minRating <= rating
                && rating <= maxRating
                && 0 <= eventTime
                && eventTime <= maxEventTime
                && eventTime <= receivedSeconds(received) + maxAheadS;
    }

    /** Whole seconds of the broker's time; a record without one is treated as received at 0. */
    static long receivedSeconds(Instant received) {
        if (received == null) {
            return 0;
        }
        return Math.max(0, Math.floorDiv(received.toEpochMilli(), MS));
    }
}
