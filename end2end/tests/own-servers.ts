// For the tests that run servers of their own (to stop and start them):
// where the repository and the server binary are, and a free port.
import * as net from "node:net";
import * as path from "node:path";

export const repo = path.resolve(process.cwd(), "..");
export const serverBin = path.resolve(process.cwd(), process.env.SERVER_BIN ?? "../target/release/sse_notify");

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address();
      srv.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}
