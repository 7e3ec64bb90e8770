package io.walkstream;

import java.nio.charset.StandardCharsets;

import org.apache.flink.api.common.serialization.SerializationSchema;

/**
 * The Kafka key of a users record: its user id, the digits after {@code {"user":} that the
 * record starts with (see {@code USER_ITEMS_SQL} in streaming/records.py), so that a user's
 * records share a partition and a compacted topic keeps each user's newest.
 */
public final class UserKey implements SerializationSchema<String> {
    private static final String PREFIX = "{\"user\":";

    @Override
    public byte[] serialize(String record) {
        if (!record.startsWith(PREFIX)) {
            throw new IllegalArgumentException("not a users record: " + record);
        }
        int end = PREFIX.length();
        if (end < record.length() && record.charAt(end) == '-') {
            end++;
        }
        while (end < record.length() && Character.isDigit(record.charAt(end))) {
            end++;
        }
        return record.substring(PREFIX.length(), end).getBytes(StandardCharsets.US_ASCII);
    }
}
