// A TypeScript program written against the client generated from openapi/bookstore.yaml
// (openapi-typescript's types driving openapi-fetch). tests/unit/test_spec_tooling.py
// generates ./bookstore.d.ts beside it and type-checks both with `tsc --noEmit`: a
// change to the spec that breaks this code breaks CI.
import createClient from "openapi-fetch";
import type { components, paths } from "./bookstore";

type Product = components["schemas"]["Product"];
type PaymentDeclined = components["schemas"]["PaymentDeclinedProblem"];

// Problem types are schemas whose `type` is fixed to their URN.
function isDeclined(problem: { type: string }): problem is PaymentDeclined {
  const urn: PaymentDeclined["type"] = "urn:bookstore:problem:payment-declined";
  return problem.type === urn;
}

const api = createClient<paths>({ baseUrl: "http://127.0.0.1:8080/api/v1" });

// Every page of the catalog, following `next_cursor` until it is null.
export async function* allProducts(category?: string): AsyncGenerator<Product> {
  let cursor: string | undefined;
  do {
    const { data, error } = await api.GET("/products", {
      params: { query: { category, cursor, limit: 100, sort: "-price" } },
    });
    if (error) throw new Error(`${error.type}: ${error.detail ?? error.title}`);
    yield* data.items;
    cursor = data.next_cursor ?? undefined;
  } while (cursor);
}

export async function checkout(token: string, addressId: string, key: string): Promise<string> {
  const { data, error, response } = await api.POST("/orders", {
    headers: { Authorization: `Bearer ${token}` },
    params: { header: { "Idempotency-Key": key } },
    body: { shipping_address_id: addressId, payment_method: "pm_card_visa" },
  });
  if (error) {
    if (isDeclined(error)) {
      const code: string = error.decline_code;
      return `declined (${code}), order ${error.order_id ?? "none"}`;
    }
    throw new Error(`${response.status} ${error.title}: ${error.detail ?? ""}`);
  }
  const total: number = data.total.amount;
  return `${data.id} ${data.status} ${total} ${data.total.currency}`;
}

export async function priceOf(productId: string): Promise<string> {
  const { data } = await api.GET("/products/{product_id}", {
    params: { path: { product_id: productId } },
  });
  return data ? `${data.price.amount} ${data.price.currency}` : "unknown";
}

// The types really constrain calls: each line below must be refused by the compiler
// (an unused @ts-expect-error is itself an error), so a spec that stopped typing these
// would fail the check too.
export async function misuses(): Promise<void> {
  // @ts-expect-error: "cheapest" is not one of the sort keys the spec allows.
  await api.GET("/products", { params: { query: { sort: "cheapest" } } });
  // @ts-expect-error: the path has no such operation.
  await api.GET("/no-such-path");
  // @ts-expect-error: a product's price is Money, not a number.
  const price: number = (await api.GET("/products/{product_id}", { params: { path: { product_id: "x" } } })).data!.price;
  void price;
}
