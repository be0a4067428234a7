-- Who joined which demo room (`/home`'s Rooms box): the demo's channel
-- policy lets a stream join `room:<name>` only for its members.
CREATE TABLE room_members (
    user_id   TEXT NOT NULL,
    room      TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, room)
);
